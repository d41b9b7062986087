"""One message's path: the pipeline every flow shares, the failure policy and the retry budget."""
