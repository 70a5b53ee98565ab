"""Top layer: one simulation run end to end, results, and the ``imcsim`` command line."""
