"""Training: the loss-and-gradient step, optimisers and the trainer loop."""
