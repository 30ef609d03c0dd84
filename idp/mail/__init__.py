"""Outgoing mail: a transactional outbox, templates in German and English, SMTP delivery."""
