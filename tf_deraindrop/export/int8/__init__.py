"""export/int8"""
