"""What the tests share, one module per kind of thing (see each module's docstring):

- ``paths``: the repository and the shared folder beside it (test data, upstream CRDs).
"""
