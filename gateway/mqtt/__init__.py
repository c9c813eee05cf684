"""MQTT shared by the bus driver (in) and the MQTT sink (out): the client and the topic
contract both sides keep."""
