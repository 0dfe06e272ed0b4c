"""`python -m compiler` is the `attractor` command."""
import sys

from compiler.cli import main

sys.exit(main())
