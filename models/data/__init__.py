"""Training data: crystals (real CIFs, packed SMILES molecules, variants), simulated experiments,
labelled density-peak graphs for the typing networks and on-the-fly samples for the phaser."""
