"""Operations: find the transfers that wait for a person, and set them moving again on the record."""
