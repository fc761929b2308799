"""the mapper: observations → edges → store → API"""
