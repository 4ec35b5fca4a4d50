"""Diagnostics of an unlearned model's weights: sharpness of the forget loss and loss landscapes."""
