"""The only code that touches storage or the network: stores, cubes, STAC, readers."""
