"""``python -m neuroprune`` entry point."""

from neuroprune.cli.app import main

if __name__ == "__main__":
    main()
