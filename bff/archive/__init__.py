"""The KOS archive of the DRIMbox Source (DB.SO.22): parser, store, CLI and admin API."""
