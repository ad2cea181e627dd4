"""``python -m neuroprune`` entry point."""

from neuroprune.cli import main

if __name__ == "__main__":
    main()
