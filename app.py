#!/usr/bin/env python3
"""CDK app entry point: ``npx cdk synth`` / ``cdk deploy`` run this (see cdk.json)."""

import aws_cdk as cdk

from stacks.app import build

app = cdk.App()
build(app)
app.synth()
