"""graphopt's command-line front end (installed as ``graphopt.cli``)."""
