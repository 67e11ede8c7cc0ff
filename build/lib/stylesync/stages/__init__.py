"""The stage layer: one module per DVC stage (and per CLI command). Each reads its params section,
calls the library (data, train, eval, infer), and writes the stage's outputs: metrics JSON, plot
CSVs, reports, MLflow runs and registry entries. Nothing below this layer writes those."""
