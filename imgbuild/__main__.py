"""`python -m imgbuild`: the same as the `imgbuild` console script."""

from imgbuild.cli import main

if __name__ == "__main__":
    main()
