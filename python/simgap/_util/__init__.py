"""The bottom layer: helpers on arrays, scalar options and files, used by every
other layer.  It imports nothing from the rest of simgap."""
