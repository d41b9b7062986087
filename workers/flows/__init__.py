"""The flows: one wiring module per flow (handlers to SQL books and downstream systems), and the list of them."""

from workers.flows import catalog, fulfillment, inventory, orders, payments, returns
from workers.flows.flow import Flow

FLOWS: tuple[Flow, ...] = (orders.FLOW, inventory.FLOW, payments.FLOW, fulfillment.FLOW, returns.FLOW, catalog.FLOW)
