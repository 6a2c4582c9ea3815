"""Data protection over the key hierarchy: the PII vault with blind-index search,
tokenization of card and bank account numbers, masking (responses and logs), consent,
export and erasure by crypto-shredding. Start at ``service`` and ``masking``.
"""
