"""Layout: the probe of the phrases' cross-attention, the block moves that place them, and early-step guidance."""
