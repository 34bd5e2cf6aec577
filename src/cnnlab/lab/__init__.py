"""The lab: tools that make the lesson's claims computable (receptive field, sharing, equivariance, ...)."""
