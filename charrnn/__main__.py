"""`python -m charrnn ...`: the command line (what torchrun starts: `torchrun --nproc-per-node 2 -m charrnn train ...`)."""

from charrnn.cli import main

if __name__ == "__main__":
    main()
