"""ODCS v3 data contracts, one YAML file per source dataset, and the loader that reads them."""
