"""MQTT driver: bus units' topics and payloads in, columnar bundles out.

    broker --MqttClient (paho on the asyncio loop)--> (topic, payload)
        --> topics.parse_topic --> payloads.check / drivers.ais140 / j1939
        --> MqttSource accumulators
        --> Bundle(fixes, readings, events, rejects) every N messages or T ms

See README.md in this folder for the topics, payloads, AIS-140 profiles and the
broker settings a deployment needs.
"""
