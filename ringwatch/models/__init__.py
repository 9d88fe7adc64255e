"""Scoring models: usage/velocity, merged risk and the GNN (PyTorch kept out of this import)."""
