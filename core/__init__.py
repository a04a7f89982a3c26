"""Latent Lab's model package.

Everything here is plain Python + PyTorch + NumPy. Only ``core.ui`` imports
Streamlit (it is the page glue); ``tests/test_core_no_streamlit.py`` enforces that.
"""
