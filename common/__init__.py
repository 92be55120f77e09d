"""What every room uses and none owns: atomic output files, native libraries' stderr. No TensorFlow here."""
