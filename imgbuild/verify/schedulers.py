"""What one client sees of the virtual service, per IPVS scheduler: the traffic checks take
their expectation from the cluster's scheduler and persistence, not from the reference rr."""

from __future__ import annotations

from typing import Literal

from imgbuild.model import Balancer

Spread = Literal["even", "pinned", "shared"]

# In turn: every real server takes an equal share (each has weight 1).
EVEN = frozenset({"rr", "wrr"})
# One client (one source address, one VIP) always reaches the same server: a hash of the
# source (sh, mh) or of the destination (dh; lblc and lblcr while the server is not
# overloaded), or the server of the highest weight (fo).
PINNED = frozenset({"sh", "mh", "dh", "lblc", "lblcr", "fo"})
# The rest (lc, wlc, sed, nq, ovf, twos) schedule by active connections: connections held
# open at once spread over every healthy server.


def spread_of(lb: Balancer) -> Spread:
    """How the client's requests spread: persistence pins a client whatever the scheduler."""
    if lb.persistence:
        return "pinned"
    if lb.scheduler in EVEN:
        return "even"
    return "pinned" if lb.scheduler in PINNED else "shared"
