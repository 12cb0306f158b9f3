"""Region reroll: the noise blend inside regions, the per-step noise that follows it, and keep the rest."""
