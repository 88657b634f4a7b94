import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # training/
sys.path.insert(0, str(HERE))  # synth.py
