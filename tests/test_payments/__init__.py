"""Online payment of bills (issue 20): $pay, the processor webhook, payment history."""
