"""`python -m charrnn.cli ...` runs the command line."""

from charrnn.cli import main

main()
