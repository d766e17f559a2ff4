"""Role images: from the cluster model to diskimage-builder artefacts and their manifest."""
