"""Mathematics with SymPy: conjugates and convexity, distribution closed forms, SymPy mapping, LaTeX."""
