"""What is rendered from the record: report, OSCAL, CBOM, Allure, JUnit, JSON."""
