"""The compute layer: the compiled modules, input checks, kernel specification
and the one device dispatch.  Everything above it calls these, never ``_C`` or
``_cuda`` directly."""
