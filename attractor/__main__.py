"""`python -m attractor` is the `attractor` command."""
import sys

from compiler.driver.cli import main

sys.exit(main())
