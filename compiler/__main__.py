"""`python -m compiler` is the `attractor` command too."""
import sys

from compiler.driver.cli import main

sys.exit(main())
