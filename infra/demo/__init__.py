"""`make demo`: the closed loop on Agrawal data, from drift to a redeployed model."""
