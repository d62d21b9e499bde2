"""Frame sources behind one URI scheme."""
