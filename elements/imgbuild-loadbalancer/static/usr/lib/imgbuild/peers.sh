# Sourced by takeover and mach_down: is_peer NODE ME holds when NODE (lowercase)
# is a `node` of ha.cf other than ME. A ping node or a stranger is no peer, and
# no resource group moves for it. Shell builtins only: takeover runs on the
# clients' clock. IMGBUILD_ROOT: a scratch root for the unit tests.
is_peer() {
    [ -n "$1" ] && [ "$1" != "$2" ] || return 1
    while read -r key values; do
        [ "$key" = node ] || continue
        for value in $values; do
            [ "$value" = "$1" ] && return 0
        done
    done < "${IMGBUILD_ROOT:-}/etc/ha.d/ha.cf"
    return 1
}
