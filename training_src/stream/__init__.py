"""The stateful scoring path: stream records in, each asset's state kept, answers out (docs/streaming.md).

- ``records.py``   the stream record format and its validation (errors name the record)
- ``state.py``     one asset's state and its compact JSON document (the DynamoDB item's ``doc``)
- ``core.py``      one batch of records + the states + an endpoint -> new states, archive, errors
- ``archive.py``   what is archived (readings, events, answers) and where (asset/day partitions)
- ``rebuild.py``   every asset's life summary for a new model, from the archive
- ``model_api.py`` the one door to the feature and serving code (life summaries, fingerprints, scoring)
- ``decisions.py`` the maintenance decision rule and its risk episodes (events once per episode)
- ``quality.py``   live model quality: archived answers joined with recorded failures
- ``failures.py``  a failed life's archived readings -> a run-to-failure history in the profile's raw layout
- ``fleet_page.py`` the fleet page: states, recent answers, quality and drift -> one HTML string

Pure Python (no boto3): local mode (``predmaint stream``), the scoring Lambda and the rebuild
processing job run this same code.
"""
