"""Recipes that string the library together: train, evaluate, check (and the config builders).

The library (data, encoders, objectives, fusion, model, training, evaluation) never imports this
package; the CLI and the benchmarks call it.
"""
