"""DTQ core: everything the Chalice app and the Lambda functions import lives here."""
