"""Stage 2 (the gate role) as a Faust agent over a changelog-backed table (``--gate-engine faust``)."""
