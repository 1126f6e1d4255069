"""AMQP transport: topology, message (de)coding, publish/consume with reconnects, provisioning."""
