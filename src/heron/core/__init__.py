"""Building blocks shared by agents: networks, distributions, normalisers, target updates."""
