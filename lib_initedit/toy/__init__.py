"""Toy world: a tiny text-to-image pixel diffusion model of coloured shapes.

Used to measure InitEdit without Stable Diffusion weights. Pure torch; never imported by the
WebUI extension at start-up.
"""
