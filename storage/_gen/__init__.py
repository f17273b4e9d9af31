"""Generated from protos/ by `python -m seawall._protos`: do not edit."""
