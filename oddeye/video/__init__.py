"""Video: decoding (io), data sets, the frame-prediction head and (engineer 5) the rules head."""
