"""Files: the one way to write (atomic), and a result directory's layout and its output guard."""
