"""The live testbed: real inference servers and devices behind shaped links, decided by orchlib's agents."""
