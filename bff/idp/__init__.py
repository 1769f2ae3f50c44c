"""Local identity provider (ProSanteConnect / FranceConnect+ / FranceConnect look-alike)
for the demo and the tests; see :mod:`bff.idp.app`."""
