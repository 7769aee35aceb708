"""Invoice and credit-note documents (SPEC 8, "Documents"): what they show (views) and how they
are laid out (render: PDF and HTML). Pure: the API and the mailer load the rows and pass them in,
so an e-mail attaches exactly the bytes `GET /v1/invoices/{id}/pdf` answers."""
